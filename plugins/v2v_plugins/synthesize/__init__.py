"""v2v built-in plugin 'synthesize': `v2v synthesize` (issue 10; being written)."""
