"""Reading files from strangers: pickle pre-scan and bounded messages about their contents."""
