from otelcockpit.cli import main

raise SystemExit(main())
