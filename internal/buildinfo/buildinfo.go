// Package buildinfo names the build: the version is set at link time by the Makefile.
package buildinfo

// Version is set with -ldflags "-X github.com/faceguard/faceguard/internal/buildinfo.Version=…".
var Version = "dev"
