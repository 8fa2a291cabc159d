"""The side-by-side benchmark suite behind `make bench`: Lamina, its peers and a floor."""
