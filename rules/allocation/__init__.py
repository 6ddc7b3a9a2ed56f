"""The desk's portfolio risk (VaR/ES, contributions, correlations, stress liquidations) and the
allocation adviser, on the Django side: inputs from the desk's state, results cached, pages and API.
The maths is positions.portfolio (plain Python + NumPy); the 1-minute bars are marketdata.bars.
docs/ALLOCATION.md."""
