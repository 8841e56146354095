"""Server-rendered pages of the explorer (one module per page)."""

__all__: list[str] = []
