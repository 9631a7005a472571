"""One date format on every staff screen (times are UTC, the project's TIME_ZONE).

English's own formats mix "Dec. 2, 2026, 6:26 a.m." and "12/02/2026"; support reads and sorts
dates, and pastes them into tickets, so every screen shows ISO-like dates.
"""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i"
TIME_FORMAT = "H:i"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
