"""Record formats, one plugin per format."""
