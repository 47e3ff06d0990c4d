"""Input limits shared by every layer (importable without torch: the server's settings use it)."""

# One pixel cap for the indexer, uploads and thumbnails alike, checked on the image header before
# any pixel is decoded: far above any camera photo (61 MP sensors exist), far below a
# decompression bomb. Whatever the indexer accepted, the server can show.
DEFAULT_MAX_PIXELS = 100_000_000
