package main

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// sink is an OTLP/gRPC trace receiver that counts spans and keeps nothing:
// the agent and the comparator export to it, so neither pays for a
// collector and memory stays flat over a long run.
type sink struct {
	collectorpb.UnimplementedTraceServiceServer
	spans atomic.Uint64
	lis   net.Listener
	srv   *grpc.Server
	done  chan struct{}
}

func startSink() (*sink, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for OTLP: %w", err)
	}
	s := &sink{lis: lis, srv: grpc.NewServer(grpc.MaxRecvMsgSize(64 << 20)), done: make(chan struct{})}
	collectorpb.RegisterTraceServiceServer(s.srv, s)
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(lis)
	}()
	return s, nil
}

// Export counts the request's spans.
func (s *sink) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	var n uint64
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			n += uint64(len(ss.Spans))
		}
	}
	s.spans.Add(n)
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func (s *sink) endpoint() string { return s.lis.Addr().String() }

func (s *sink) close() {
	s.srv.Stop()
	<-s.done
}
