
redis.call('ZREM', KB, ARGV[2])
redis.call('HDEL', KP, ARGV[2])
return '{}'
