"""Dataset layout (fixed, see docs/architecture.md), label sets, validation and the training clip dataset."""
