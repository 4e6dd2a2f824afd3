"""What marks a prepared dataset's folder: its metadata file's name and the cache format's version (shared by the
arrow caches, `_cache`, and the memory-mapped columnar ones, `_columnar`)."""

FORMAT_VERSION = 1  # bump when a cache's layout changes: older caches are then rebuilt
META = "nws_meta.json"  # written last into a prepared folder: its presence means the folder is complete
