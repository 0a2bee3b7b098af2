"""The network: backbones, attention across the batch, heads, losses."""
