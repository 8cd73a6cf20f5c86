// Package e2e holds the end-to-end tests: they build the real proxy and
// storage-backend binaries, start them on free ports against a real
// PostgreSQL, and speak HTTP to them the way a headset does.
package e2e
