"""From a channel's feed to a phone: sessions, the hub, the long-poll fallback."""
