"""meshlab's ingress controller for the edge proxy: the pure translator and the program the edge pod runs on Kubernetes."""
