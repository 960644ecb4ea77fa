"""servers: thin shells around pure cores (built-in workload servers; later DNS, gateway
proxy, API). Each runs as its own process and imports nothing of the planes above
``model``."""
