"""The operator web console's static server: the Vite build of console/ under /console/, behind Envoy."""
