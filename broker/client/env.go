package client

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// Environment variables the edge's supervisor sets for every module
// (CONTRACT.md §4, as IoT Edge's edgeAgent does).
const (
	EnvConnectionString = "EdgeHubConnectionString"
	EnvCACertificate    = "EdgeModuleCACertificateFile"
	EnvDeviceID         = "IOTEDGE_DEVICEID"
	EnvModuleID         = "IOTEDGE_MODULEID"
	EnvGatewayHostName  = "IOTEDGE_GATEWAYHOSTNAME"
	EnvIoTHubHostName   = "IOTEDGE_IOTHUBHOSTNAME"
)

// ErrNoEnvironment: FromEnvironment found no module environment.
var ErrNoEnvironment = errors.New("not running as an edge module: " + EnvConnectionString + " is not set (the edge's supervisor sets " +
	EnvDeviceID + ", " + EnvModuleID + ", " + EnvGatewayHostName + ", " + EnvIoTHubHostName + ", " +
	EnvConnectionString + " and " + EnvCACertificate + " for the modules of a deployment; to run elsewhere, use FromConnectionString)")

// FromEnvironment makes the client of a module run by an edge's
// supervisor: the module's connection string from EdgeHubConnectionString
// (`HostName=<hub>;DeviceId=<d>;ModuleId=<m>;SharedAccessKey=<key>;
// GatewayHostName=<edge>[:port]`), and, from EdgeModuleCACertificateFile,
// the CA certificate (PEM) the edge's server certificate is signed by,
// trusted for TLS instead of the system roots. opts apply after those, so
// WithBroker, WithRootCAs or WithTLSConfig can still override them.
func FromEnvironment(opts ...Option) (*Client, error) {
	cs := os.Getenv(EnvConnectionString)
	if cs == "" {
		return nil, ErrNoEnvironment
	}
	var pre []Option
	if file := os.Getenv(EnvCACertificate); file != "" {
		pem, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read the edge CA certificate (%s): %w", EnvCACertificate, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the edge CA certificate file %s (%s) holds no PEM certificate", file, EnvCACertificate)
		}
		pre = append(pre, WithRootCAs(pool))
	}
	c, err := FromConnectionString(cs, append(pre, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvConnectionString, err)
	}
	if c.ModuleID() == "" {
		return nil, fmt.Errorf("%s has no ModuleId: FromEnvironment is for modules (devices use FromConnectionString)", EnvConnectionString)
	}
	return c, nil
}
