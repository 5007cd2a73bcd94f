"""The result document: its typed sections (every key of result.json), the formulas of its
figures, its assembly from what a run measured, and its files written atomically."""
