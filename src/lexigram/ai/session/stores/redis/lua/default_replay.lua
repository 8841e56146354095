
local function replay(prev) return prev end
