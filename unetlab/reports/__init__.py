"""What finished runs show: the table, comparisons, plots, the HTML report and the search report."""
