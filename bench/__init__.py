"""Benchmarks: peer servers, HTTP load and memory sampling for comparing the API."""
