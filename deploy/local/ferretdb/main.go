// Command ferretdb-local runs FerretDB 1.x with its SQLite backend on loopback.
//
// FerretDB is embedded as a library because the upstream binary built with
// `go install` panics at start-up (its version file is not in the module zip).
package main

import (
	"context"
	"flag"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:17018", "TCP address to listen on")
	dir := flag.String("dir", "./ferretdb-data", "data directory (created if missing)")
	memory := flag.Bool("memory", false, "keep data in memory only")
	flag.Parse()

	abs, err := filepath.Abs(*dir)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		log.Fatal(err)
	}
	url := "file:" + abs + "/"
	if *memory {
		url += "?mode=memory"
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *addr},
		Handler:   "sqlite",
		SQLiteURL: url,
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// MongoDBURI() must not be called before Run: it can deadlock.
	log.Printf("FerretDB (sqlite %s) on mongodb://%s/", url, *addr)
	f.Run(ctx)
}
