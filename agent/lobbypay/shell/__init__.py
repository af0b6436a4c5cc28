"""The asyncio shell: adapters that own one library each (httpx, MQTT, SQLite, sd_notify)."""
