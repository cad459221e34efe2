"""The hostile request corpus: cases.yaml, bodies/ and corpus.py, which reads them."""
