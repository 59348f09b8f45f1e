package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/faceguard/faceguard/agent/engine"
	"github.com/faceguard/faceguard/internal/buildinfo"
)

func runVersion(stdout io.Writer) error {
	fmt.Fprintf(stdout, "faceguard-agent %s (OPA %s, %s, %s/%s)\n",
		buildinfo.Version, engine.OPAVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
