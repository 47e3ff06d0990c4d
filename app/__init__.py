"""clipsearch.app: the HTTP service, the `clipsearch` CLI and the web page."""
