"""Dataset layout (fixed, see ARCHITECTURE.md), label sets, validation and the training clip dataset."""
