// The families of pre-built connectors, each in its own file under src/connect/, added to
// the catalog by ConnectorCatalog::builtin() (catalog.cpp).
#pragma once

#include "civicbus/connect/connector.hpp"

namespace civicbus::connect::detail {

// Each family's file under src/connect/ defines one of these (declared here as the family
// lands):

// sqlite (sql_common.cpp holds what the SQL connectors share).
Status add_sql_connectors(ConnectorCatalog& catalog);

// csv, json, xml (file_connectors.cpp; file_formats.cpp holds encodings, type inference and
// folder listing).
Status add_file_connectors(ConnectorCatalog& catalog);

// cpa005, bai2, cra_remittance, erp_gl, mpac, gtfs, gtfs_rt (municipal_connectors.cpp; the
// formats are in municipal_formats.hpp).
Status add_municipal_connectors(ConnectorCatalog& catalog);

// http, webhook, canada_post, arcgis, open311 (http_connectors.cpp and one file per protocol;
// rest_client.hpp holds what they share).
Status add_http_connectors(ConnectorCatalog& catalog);

// postgres (postgres_connector.cpp) and amanda, CSDC AMANDA exports over sqlite or postgres
// (amanda_connector.cpp, added by add_amanda_connector); both share sql_common.cpp.
Status add_database_connectors(ConnectorCatalog& catalog);
Status add_amanda_connector(ConnectorCatalog& catalog);

// mqtt, smtp (mqtt_connector.cpp, smtp_connector.cpp; add_messaging_connectors is in
// mqtt_connector.cpp).
Status add_messaging_connectors(ConnectorCatalog& catalog);
std::unique_ptr<Connector> make_mqtt_connector();
std::unique_ptr<Connector> make_smtp_connector();

// s3 (s3_connector.cpp, signed by aws_sigv4.cpp) and sftp (sftp_connector.cpp, added by
// add_sftp_connector); both share remote_files.cpp.
Status add_object_storage_connectors(ConnectorCatalog& catalog);
Status add_sftp_connector(ConnectorCatalog& catalog);

}  // namespace civicbus::connect::detail
