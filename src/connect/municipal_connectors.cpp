// The municipal connector family: bank files (CPA 005, BAI2), payroll remittance, ERP
// general ledger, MPAC assessment and transit (GTFS, GTFS-realtime).
#include "builtin_connectors.hpp"
#include "municipal_formats.hpp"

namespace civicbus::connect::detail {

Status add_municipal_connectors(ConnectorCatalog& catalog) {
  for (ConnectorFactory factory :
       {ConnectorFactory(make_cpa005_connector), ConnectorFactory(make_bai2_connector),
        ConnectorFactory(make_cra_remittance_connector), ConnectorFactory(make_erp_gl_connector),
        ConnectorFactory(make_mpac_connector), ConnectorFactory(make_gtfs_connector),
        ConnectorFactory(make_gtfs_rt_connector)}) {
    CIVICBUS_RETURN_IF_ERROR(catalog.add(std::move(factory)));
  }
  return Status();
}

}  // namespace civicbus::connect::detail
