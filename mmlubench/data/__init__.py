"""MMLU as the case reads it: the CSV files, the few-shot prompt rule and its tokenization, the
answer rules; and fetching MMLU and the weights. Knows nothing of engines or devices."""
