"""Named methods: the settings each sets, per dataset preset."""
