"""The built-in ``attention`` plugin: which agent needs the person now, and why."""
