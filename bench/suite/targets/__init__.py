"""The things the suite measures: Lamina variants, peer tools and the physical floor."""
