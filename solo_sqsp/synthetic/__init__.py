"""Synthetic data for the student: the seeded stream, the live and bank sources (Sec. 3)."""
