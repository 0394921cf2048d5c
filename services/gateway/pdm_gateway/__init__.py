"""The API gateway: the one HTTP (REST + WebSocket) entry of the platform for clients."""
