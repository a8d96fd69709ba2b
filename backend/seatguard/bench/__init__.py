"""`seatguard bench`: the presence server side by side with bare echo servers.

`conductor` runs the scenarios against targets started in `targets`, with load from
separate `client` processes, and `report` prints the table, writes JSON and draws a chart.
"""

__all__: list[str] = []
