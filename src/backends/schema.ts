/**
 * EMQX 4.4's backend tables (mqtt_client, mqtt_sub, mqtt_msg, mqtt_retain, mqtt_acked) in the
 * PostgreSQL and MySQL dialects, created at start when missing (`IF NOT EXISTS`: existing
 * tables are never changed), with the indexes the lookups need. Column names and types are
 * EMQX's, so consumers written against EMQX's tables keep working.
 */
export const PG_SCHEMA: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS mqtt_client (
    id SERIAL8 PRIMARY KEY,
    clientid character varying(100),
    state integer,
    node character varying(100),
    online_at timestamp without time zone,
    offline_at timestamp without time zone,
    created timestamp without time zone,
    UNIQUE (clientid)
  )`,
  `CREATE TABLE IF NOT EXISTS mqtt_sub (
    id SERIAL8 PRIMARY KEY,
    clientid character varying(100),
    topic character varying(200),
    qos integer,
    created timestamp without time zone,
    UNIQUE (clientid, topic)
  )`,
  `CREATE TABLE IF NOT EXISTS mqtt_msg (
    id SERIAL8 PRIMARY KEY,
    msgid character varying(64),
    sender character varying(64),
    topic character varying(255),
    qos integer,
    retain integer,
    payload text,
    arrived timestamp without time zone
  )`,
  'CREATE INDEX IF NOT EXISTS mqtt_msg_topic_idx ON mqtt_msg (topic, id)',
  'CREATE INDEX IF NOT EXISTS mqtt_msg_msgid_idx ON mqtt_msg (msgid)',
  `CREATE TABLE IF NOT EXISTS mqtt_retain (
    id SERIAL8 PRIMARY KEY,
    topic character varying(200),
    msgid character varying(60),
    sender character varying(100),
    qos integer,
    payload text,
    arrived timestamp without time zone,
    UNIQUE (topic)
  )`,
  `CREATE TABLE IF NOT EXISTS mqtt_acked (
    id SERIAL8 PRIMARY KEY,
    clientid character varying(200),
    topic character varying(200),
    mid integer,
    created timestamp without time zone,
    UNIQUE (clientid, topic)
  )`,
];

export const MYSQL_SCHEMA: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS \`mqtt_client\` (
    \`id\` int(11) unsigned NOT NULL AUTO_INCREMENT,
    \`clientid\` varchar(64) DEFAULT NULL,
    \`state\` varchar(3) DEFAULT NULL,
    \`node\` varchar(64) DEFAULT NULL,
    \`online_at\` datetime DEFAULT NULL,
    \`offline_at\` datetime DEFAULT NULL,
    \`created\` timestamp NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (\`id\`),
    KEY \`mqtt_client_idx\` (\`clientid\`),
    UNIQUE KEY \`mqtt_client_key\` (\`clientid\`)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
  `CREATE TABLE IF NOT EXISTS \`mqtt_sub\` (
    \`id\` int(11) unsigned NOT NULL AUTO_INCREMENT,
    \`clientid\` varchar(64) DEFAULT NULL,
    \`topic\` varchar(180) DEFAULT NULL,
    \`qos\` tinyint(1) DEFAULT NULL,
    \`created\` timestamp NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (\`id\`),
    KEY \`mqtt_sub_idx\` (\`clientid\`,\`topic\`,\`qos\`),
    UNIQUE KEY \`mqtt_sub_key\` (\`clientid\`,\`topic\`)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
  `CREATE TABLE IF NOT EXISTS \`mqtt_msg\` (
    \`id\` int(11) unsigned NOT NULL AUTO_INCREMENT,
    \`msgid\` varchar(64) DEFAULT NULL,
    \`topic\` varchar(180) NOT NULL,
    \`sender\` varchar(64) DEFAULT NULL,
    \`node\` varchar(64) DEFAULT NULL,
    \`qos\` tinyint(1) NOT NULL DEFAULT '0',
    \`retain\` tinyint(2) DEFAULT NULL,
    \`payload\` blob,
    \`arrived\` datetime NOT NULL,
    PRIMARY KEY (\`id\`),
    KEY \`mqtt_msg_topic_idx\` (\`topic\`, \`id\`),
    KEY \`mqtt_msg_msgid_idx\` (\`msgid\`)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
  `CREATE TABLE IF NOT EXISTS \`mqtt_retain\` (
    \`id\` int(11) unsigned NOT NULL AUTO_INCREMENT,
    \`topic\` varchar(180) DEFAULT NULL,
    \`msgid\` varchar(64) DEFAULT NULL,
    \`sender\` varchar(64) DEFAULT NULL,
    \`node\` varchar(64) DEFAULT NULL,
    \`qos\` tinyint(1) DEFAULT NULL,
    \`payload\` blob,
    \`arrived\` timestamp NULL DEFAULT NULL,
    PRIMARY KEY (\`id\`),
    UNIQUE KEY \`mqtt_retain_key\` (\`topic\`)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
  `CREATE TABLE IF NOT EXISTS \`mqtt_acked\` (
    \`id\` int(11) unsigned NOT NULL AUTO_INCREMENT,
    \`clientid\` varchar(200) DEFAULT NULL,
    \`topic\` varchar(180) DEFAULT NULL,
    \`mid\` int(11) unsigned DEFAULT NULL,
    \`created\` timestamp NULL DEFAULT NULL,
    PRIMARY KEY (\`id\`),
    UNIQUE KEY \`mqtt_acked_key\` (\`clientid\`,\`topic\`)
  ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`,
];
