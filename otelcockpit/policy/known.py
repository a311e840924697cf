"""Component names the linter knows (OpenTelemetry Collector core/contrib and Grafana Alloy).

A name outside these lists is reported as a warning (it may be a typo, or a component from a
custom distribution); the lists are not a claim of completeness.
"""

from __future__ import annotations

OTEL: dict[str, frozenset[str]] = {
    "receivers": frozenset(
        """otlp prometheus hostmetrics kubeletstats k8s_cluster k8sobjects k8s_events filelog journald jaeger
        zipkin awsecscontainermetrics awsxray awscloudwatch statsd obi syslog tcplog udplog kafka docker_stats
        podman_stats windowseventlog windowsperfcounters sqlserver mysql postgresql redis nginx apache httpcheck
        prometheus_simple receiver_creator fluentforward opencensus carbon influxdb signalfx splunk_hec datadog
        azureeventhub googlecloudpubsub pulsar rabbitmq memcached mongodb elasticsearch jmx snmp sshcheck
        otlpjsonfile loki skywalking webhookevent vcenter zookeeper haproxy iis oracledb bigip nsxt
        active_directory_ds chrony cloudfoundry collectd couchdb expvar github gitlab riak saphana""".split()
    ),
    "processors": frozenset(
        """batch memory_limiter attributes resource resourcedetection k8sattributes filter transform tail_sampling
        probabilistic_sampler span groupbyattrs groupbytrace cumulativetodelta deltatocumulative metricstransform
        redaction routing interval metricsgeneration logdedup schema remotetap unroll geoip
        logstransform dnslookup""".split()
    ),
    "exporters": frozenset(
        """otlp otlphttp debug logging prometheus prometheusremotewrite loadbalancing kafka file awsxray awsemf
        awss3 awscloudwatchlogs loki elasticsearch opensearch clickhouse datadog googlecloud
        googlemanagedprometheus azuremonitor splunk_hec signalfx zipkin influxdb carbon sapm sentry coralogix
        nop""".split()
    ),
    "connectors": frozenset(
        """spanmetrics servicegraph forward count routing roundrobin exceptions failover datadog grafanacloud
        signaltometrics sum""".split()
    ),
    "extensions": frozenset(
        """health_check healthcheckv2 pprof zpages file_storage basicauth bearertokenauth headers_setter
        oauth2client sigv4auth opamp k8s_observer docker_observer host_observer ecs_observer ecs_task_observer
        jaegerremotesampling oidc memory_limiter""".split()
    ),
}

ALLOY_PREFIXES = (
    "prometheus.exporter.",
    "otelcol.receiver.",
    "otelcol.processor.",
    "otelcol.exporter.",
    "otelcol.connector.",
    "otelcol.auth.",
    "otelcol.extension.",
    "otelcol.storage.",
    "loki.source.",
    "discovery.",
    "remote.",
    "import.",
)
ALLOY_COMPONENTS = frozenset(
    """prometheus.scrape prometheus.remote_write prometheus.relabel prometheus.receive_http
    prometheus.operator.podmonitors prometheus.operator.servicemonitors prometheus.operator.probes
    prometheus.operator.scrapeconfigs prometheus.write.queue loki.process loki.write loki.relabel loki.echo
    loki.rules.kubernetes local.file_match local.file beyla.ebpf pyroscope.ebpf pyroscope.write pyroscope.scrape
    pyroscope.java pyroscope.receive_http mimir.rules.kubernetes faro.receiver database_observability.mysql
    otelcol.processor.batch""".split()
)
# Exporter-like Alloy components and the attributes that hold where they send data.
ALLOY_SENDERS = ("otelcol.exporter.", "prometheus.remote_write", "loki.write", "pyroscope.write")
