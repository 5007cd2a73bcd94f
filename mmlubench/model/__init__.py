"""The model folder: checked against the tokenizer, the engines and the device, loaded in the
run's precision (or built with random weights), and identified for resuming."""
