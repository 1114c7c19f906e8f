"""The straightforward port of the reference algorithms, kept only for the equivalence tests.

The package holds one (fast) body per stage; these are the plain formulations they replaced,
written the way the reference code computes them, so that a test can say "same function".
"""
