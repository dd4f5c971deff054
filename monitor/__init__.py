"""dprk-outage-monitor: watches a country's external Internet from outside and reports outages."""

__version__ = "0.1.0"
