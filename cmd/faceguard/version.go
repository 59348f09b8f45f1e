package main

import (
	"fmt"
	"runtime"

	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/internal/buildinfo"
)

func runVersion(e env) error {
	fmt.Fprintf(e.stdout, "faceguard %s (OPA %s, %s, %s/%s)\n", buildinfo.Version, engine.OPAVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
