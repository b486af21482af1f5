"""What finished runs show: the table, comparisons, plots and the HTML report (a search's report of
its studies is :mod:`unetlab.sweeps.search_report`)."""
