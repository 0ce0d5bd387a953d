"""kefu-pulse: live customer-service (客服) KPIs from Kafka to Prometheus."""

__version__ = "0.1.0"
