"""Metrics of a representation: the weighted k-NN classifier and the collapse monitor."""
