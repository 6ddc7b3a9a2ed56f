"""Portfolio risk maths for issue 18: volatility, scenarios, VaR/ES with margin mechanics, allocation.

Plain Python + NumPy, no Django (house style: risk maths stays importable from anywhere).
The public API and its units are listed in each module's docstring:

* ``history``     minute closes cut at ``as_of`` and aligned on one grid
* ``volatility``  log returns, EWMA volatility and correlation
* ``scenarios``   historical 1-day windows, the 2021-05-19 crash, proxies by beta
* ``var``         revaluation under scenarios with margin mechanics, VaR/ES, components, parametric
* ``allocation``  risk parity / inverse-volatility weights, notional and leverage caps
* ``errors``      the errors (each with a stable ``code``)
"""
