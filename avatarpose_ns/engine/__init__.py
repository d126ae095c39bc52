"""Training utilities: schedulers whose state loads with torch.load(weights_only=True)."""
