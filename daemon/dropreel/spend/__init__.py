"""Money: what a job will cost, what was spent, and the budget that holds jobs back."""
