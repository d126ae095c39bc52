"""The scene frame and time that both the dataparsers and the models use, below both of them."""
