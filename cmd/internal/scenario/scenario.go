package scenario

import "github.com/rogpeppe/go-internal/testscript"

// Commands returns the custom commands of the scenarios, by name. The map is
// new on every call; callers may add to it.
func Commands() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		// edge.go
		"waitready":  cmdWaitReady,
		"hup":        cmdHup,
		"waitlink":   cmdWaitLink,
		"waitqueue":  cmdWaitQueue,
		"waittwin":   cmdWaitTwin,
		"checkacked": cmdCheckAcked,
		"mkcerts":    cmdMkCerts,
		"waitstatus": cmdWaitStatus,
		"killmodule": cmdKillModule,
		// hub.go
		"hubready":    cmdHubReady,
		"waitevents":  cmdWaitEvents,
		"waithubtwin": cmdWaitHubTwin,
		"checkevents": cmdCheckEvents,
		"cmptwins":    cmdCmpTwins,
		"eventbodies": cmdEventBodies,
		"eventtally":  cmdEventTally,
		// cluster.go
		"nodeready":       cmdNodeReady,
		"usenode":         cmdUseNode,
		"freeport":        cmdFreePort,
		"clusterready":    cmdClusterReady,
		"clusterleader":   cmdClusterLeader,
		"clusterfollower": cmdClusterFollower,
		"clustersynced":   cmdClusterSynced,
		"twinflood":       cmdTwinFlood,
		"eventwatch":      cmdEventWatch,
		"checknodetwins":  cmdCheckNodeTwins,
		"noderead":        cmdNodeRead,
		"waitnode":        cmdWaitNode,
		"nodestat":        cmdNodeStat,
		"waitstat":        cmdWaitStat,
		// mqtt.go
		"mqtt":        cmdMQTT,
		"mqtttwin":    cmdMQTTTwin,
		"mqttgettwin": cmdMQTTGetTwin,
		"mqttrefused": cmdMQTTRefused,
		// http.go
		"http":     cmdHTTP,
		"httpwait": cmdHTTPWait,
		// link.go
		"link": cmdLink,
		// env.go
		"sleep":     cmdSleep,
		"envjson":   cmdEnvJSON,
		"envout":    cmdEnvOut,
		"splitaddr": cmdSplitAddr,
		"waitfile":  cmdWaitFile,
		"perm":      cmdPerm,
		"subst":     cmdSubst,
		// wait.go
		"waitexec": cmdWaitExec,
		// disk.go
		"mounttmpfs": cmdMountTmpfs,
		"fillfs":     cmdFillFS,
	}
}
