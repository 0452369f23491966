// The service-map edges the glue's spans name (instrumentation/edges.py, docs/decisions.md D20).
// `null` is the span's own service (its resource service.name).

export const POSTGRES = 'postgresql';
export const KAFKA = 'kafka';
export const REDIS = 'redis';
export const CONNECT = 'kafka.connect';
export const MESSAGING = 'messaging_system';
export const DATABASE = 'database';
export const SELF = null;

export function edge({ client = SELF, server = SELF, type = '' }) {
  if (client === SELF && server === SELF) throw new Error("an edge needs at least one end that is not the span's own service");
  if (!['', MESSAGING, DATABASE].includes(type)) throw new Error(`edge type ${JSON.stringify(type)} is not one of '', ${MESSAGING}, ${DATABASE}`);
  return Object.freeze({ client, server, type });
}

export function edgeAttributes(e, ownService) {
  const attrs = {
    'hopscope.edge.client': e.client === SELF ? ownService : e.client,
    'hopscope.edge.server': e.server === SELF ? ownService : e.server,
  };
  if (e.type) attrs['hopscope.edge.type'] = e.type;
  return attrs;
}

// Debezium has no spans: its two edges sit on the derived hops built from its change events.
export const CAPTURE_EDGE = edge({ client: POSTGRES, server: CONNECT });
export const CDC_APPEND_EDGE = edge({ client: CONNECT, server: KAFKA, type: MESSAGING });
export const PUBLISH_EDGE = edge({ server: REDIS, type: MESSAGING });
export const ROUTE_EDGE = edge({ server: REDIS, type: DATABASE });
export const INSERT_EDGE = edge({ server: POSTGRES, type: DATABASE });
export const FROM_KAFKA = edge({ client: KAFKA, type: MESSAGING });
