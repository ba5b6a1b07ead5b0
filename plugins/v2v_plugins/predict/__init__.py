"""v2v built-in plugin 'predict': future-frame prediction models and `v2v predict` (issue 13; being written)."""
