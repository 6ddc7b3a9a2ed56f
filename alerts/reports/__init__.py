"""Scheduled risk reports (issue 16): figures (plain maths), gather (rows at the edge), charts
(matplotlib), render (HTML, CSV, PDF), services (generate, deliver). See docs/REPORTS.md."""
